"""The runner as a real subprocess, spoken to over FastCGI: sandbox, change detection."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable

import pytest

from cgirt.site import bump_generation
from tests.support.fcgi import cgi_params, connect, read_response, request, send_request
from tests.support.procs import children_of, wait_for
from tests.support.servers import Runner

pytestmark = pytest.mark.integration


def get(runner: Runner, path: str, query: str = "", **extra: str) -> str:
    resp = request(runner.address, cgi_params(path, query, **extra))
    assert resp.ended, resp
    return f"{resp.status} {resp.body.decode(errors='replace')}"


def parse_state(text: str) -> dict[str, str]:
    body = text.split(" ", 1)[1]
    return dict(line.split("=", 1) for line in body.splitlines() if "=" in line)


def test_no_state_leaks_over_1000_alternating_requests(
        site: Path, start_runner: Callable[..., Runner], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CGIRT_RUNNER_SECRET", "the runner's own environment")
    runner = start_runner(site, workers=1)
    for i in range(500):
        leaker = "/cgi-bin/cgi_test.py" if i % 2 else "/cgi-bin/leaky.py"
        assert get(runner, leaker, f"n={i}").startswith("200 ")
        state = parse_state(get(runner, "/cgi-bin/inspect_state.py", "check", HTTP_X_TEST=f"x{i}"))
        assert state == {
            "argv": "['check']", "cgi_maxlen": "0", "cwd_is_script_dir": "True",
            "leaked_path": "False", "leaked_putenv_subprocess": "'none'", "leaked_var": "None",
            "leaky_global": "False", "name": "'__main__'", "os_popen": f"'x{i}'",
            "os_system_sees_request": "True", "path0_is_script_dir": "True",
            "query_in_subprocess": "'check'", "runner_env_visible": "False",
            "sigusr1_default": "True", "stderr_is_stdout": "False", "umask": state["umask"],
        }, f"request {i}"
        assert state["umask"] != "'0o0'"


def test_atexit_handlers_of_a_script_run_after_it(site: Path, start_runner: Callable[..., Runner]) -> None:
    runner = start_runner(site, workers=1)
    body = get(runner, "/cgi-bin/leaky.py")
    assert body.rstrip().endswith("atexit ran")
    assert "atexit ran" not in get(runner, "/cgi-bin/hello.py")


def test_stdin_gives_exactly_content_length_bytes(site: Path, start_runner: Callable[..., Runner]) -> None:
    runner = start_runner(site, workers=1)
    import hashlib
    payload = os.urandom(300_000)
    # The web server sends more bytes than CONTENT_LENGTH: the script must see only those.
    resp = request(runner.address, cgi_params("/cgi-bin/echo.py", method="POST",
                                              CONTENT_LENGTH="1000"), body=payload)
    assert resp.body.split()[:2] == [b"1000", hashlib.sha256(payload[:1000]).hexdigest().encode()]


TAMPER = """import io, sys
print("Content-Type: text/plain")
print()
print("before", flush=True)
how = sys.argv[1]
if how == "close":
    sys.stdout.close()
elif how == "reconfigure":
    sys.stdout.reconfigure(encoding="latin-1", errors="strict", line_buffering=True)
    print("caf\\xe9")
elif how == "detach":
    sys.stdout.detach().write(b"detached\\n")
elif how == "replace":
    print("kept")
    sys.stdout = io.StringIO()
    print("captured, never sent")
elif how == "stderr":
    sys.stderr.write("a last line without a newline")
    sys.stderr.close()
elif how == "stdin":
    sys.stdin.close()
"""

CHECK = """import sys
out = sys.stdout
print("Content-Type: text/plain")
print()
print(out.encoding, out.errors, out.line_buffering, out.write_through, repr(sys.stdin.read()))
print("caf\\xe9")
sys.stderr.write("check wrote to stderr\\n")
"""


@pytest.mark.parametrize("how, body", [
    ("close", "before\n"),
    ("reconfigure", "before\ncaf\ufffd\n"),  # Latin-1 on the wire, read back as UTF-8
    ("detach", "before\ndetached\n"),
    ("replace", "before\nkept\n"),
    ("stderr", "before\n"),
    ("stdin", "before\n"),
])
def test_streams_a_script_changed_are_not_handed_on(
        site: Path, start_runner: Callable[..., Runner], how: str, body: str) -> None:
    # The worker reuses its script streams across requests; one a script closed, detached,
    # reconfigured or replaced must not reach the next request changed.
    (site / "cgi-bin" / "tamper.py").write_text(TAMPER)
    (site / "cgi-bin" / "check.py").write_text(CHECK)
    runner = start_runner(site, workers=1)
    for _ in range(2):
        assert get(runner, "/cgi-bin/tamper.py", how) == "200 " + body
        assert get(runner, "/cgi-bin/check.py") == "200 utf-8 surrogateescape False True ''\ncaf\xe9\n"
    log = (site / ".cgirt" / "logs" / "error.log").read_text()
    assert log.count("check wrote to stderr") == 2
    if how == "stderr":
        assert log.count("a last line without a newline") == 2


def test_flushed_output_is_sent_before_the_script_ends(
        site: Path, start_runner: Callable[..., Runner], tmp_path: Path) -> None:
    # The end of a response goes out with the end of the request in one write; what a script
    # flushes while it runs must not wait for that.
    go = tmp_path / "go"
    (site / "cgi-bin" / "progressive.py").write_text(
        "import os, sys, time\nprint('Content-Type: text/plain')\nprint()\n"
        "print('first', flush=True)\ndeadline = time.monotonic() + 10\n"
        f"while not os.path.exists({str(go)!r}) and time.monotonic() < deadline:\n"
        "    time.sleep(0.01)  # the script's own wait for the test's go-ahead\n"
        f"print('second' if os.path.exists({str(go)!r}) else 'never told to go on')\n")
    runner = start_runner(site, workers=1)
    head = b"Status: 200 OK\r\nContent-Type: text/plain\r\n\r\nfirst\n"
    s = connect(runner.address)
    try:
        send_request(s, cgi_params("/cgi-bin/progressive.py"))
        first = read_response(s, read_limit=len(head))
        assert (first.stdout, first.ended) == (head, False)
        go.touch()
        rest = read_response(s)
        assert (rest.stdout, rest.ended) == (b"second\n", True)
    finally:
        s.close()


# -- change detection: each edit is followed by exactly one request ----------------------

def write_script(path: Path, text: str) -> None:
    path.write_text("#!/usr/bin/env python3\nprint('Content-Type: text/plain')\nprint()\n" + text)


@pytest.fixture
def warm(site: Path, start_runner: Callable[..., Runner]) -> tuple[Runner, Path]:
    script = site / "cgi-bin" / "version.py"
    write_script(script, "print('version-1')\n")
    runner = start_runner(site, workers=1)
    assert get(runner, "/cgi-bin/version.py") == "200 version-1\n"
    return runner, script


def test_in_place_edit(warm: tuple[Runner, Path]) -> None:
    runner, script = warm
    with open(script, "w") as f:
        f.write("print('Content-Type: text/plain')\nprint()\nprint('version-2, longer')\n")
    assert get(runner, "/cgi-bin/version.py") == "200 version-2, longer\n"


def test_rename_into_place(warm: tuple[Runner, Path]) -> None:
    runner, script = warm
    tmp = script.with_name(".version.tmp")
    write_script(tmp, "print('version-2')\n")
    os.replace(tmp, script)
    assert get(runner, "/cgi-bin/version.py") == "200 version-2\n"


def test_older_mtime(warm: tuple[Runner, Path]) -> None:
    runner, script = warm
    write_script(script, "print('version-2')\n")
    os.utime(script, (946684800, 946684800))  # the year 2000, as an FTP client may set
    assert get(runner, "/cgi-bin/version.py") == "200 version-2\n"


def test_same_size_same_mtime_new_content(warm: tuple[Runner, Path]) -> None:
    runner, script = warm
    before = os.stat(script)
    text = script.read_text()
    with open(script, "r+") as f:  # same inode, same size
        f.write(text.replace("version-1", "version-9"))
    os.utime(script, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(script)
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)
    assert get(runner, "/cgi-bin/version.py") == "200 version-9\n"


def test_generation_bump_after_publish(warm: tuple[Runner, Path], site: Path) -> None:
    runner, script = warm
    write_script(script, "print('version-2')\n")
    bump_generation(site)
    assert get(runner, "/cgi-bin/version.py") == "200 version-2\n"


def test_site_modules_are_reloaded_transitively(site: Path, start_runner: Callable[..., Runner]) -> None:
    runner = start_runner(site, workers=1)
    assert get(runner, "/cgi-bin/uses_helper.py") == "200 outer-1 inner-1\n"
    inner = site / "cgi-bin" / "helper_inner.py"
    inner.write_text('VALUE = "inner-2"\n')
    assert get(runner, "/cgi-bin/uses_helper.py") == "200 outer-1 inner-2\n"
    outer = site / "cgi-bin" / "helper_outer.py"
    outer.write_text(outer.read_text().replace("outer-1", "outer-2"))
    assert get(runner, "/cgi-bin/uses_helper.py") == "200 outer-2 inner-2\n"
    before = os.stat(inner)
    with open(inner, "r+") as f:  # same size and mtime: only the content check can see it
        f.write('VALUE = "inner-3"\n')
    os.utime(inner, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert get(runner, "/cgi-bin/uses_helper.py") == "200 outer-2 inner-3\n"
    assert not (site / "cgi-bin" / "__pycache__").exists()


def test_syntax_error_then_fixed(warm: tuple[Runner, Path], site: Path) -> None:
    runner, script = warm
    write_script(script, "print('broken'\n")
    assert get(runner, "/cgi-bin/version.py").startswith("500 ")
    assert "syntax error" in (site / ".cgirt/logs/error.log").read_text()
    write_script(script, "print('version-3')\n")
    assert get(runner, "/cgi-bin/version.py") == "200 version-3\n"


def test_mode_file_chooses_fork_mode(site: Path, start_runner: Callable[..., Runner]) -> None:
    runner = start_runner(site, workers=1)
    persistent = {get(runner, "/cgi-bin/pid.py") for _ in range(3)}
    assert len(persistent) == 1
    (site / "cgi-bin" / ".cgirt-mode").write_text("fork\n")
    forked = {get(runner, "/cgi-bin/pid.py") for _ in range(3)}
    assert len(forked) == 3 and not forked & persistent
    (site / "cgi-bin" / ".cgirt-mode").write_text("exec\n")
    assert get(runner, "/cgi-bin/env.py").startswith("200 GATEWAY_INTERFACE=CGI/1.1")


def test_python_recognised_by_shebang_runs_in_process(site: Path, start_runner: Callable[..., Runner]) -> None:
    runner = start_runner(site, workers=1)
    worker = runner.worker_pids()
    for _ in range(2):
        text = get(runner, "/cgi-bin/pyshebang")
        assert text.startswith("200 no extension") and text.split()[-1] == str(worker[0])


def test_internal_redirects_are_bounded(site: Path, start_runner: Callable[..., Runner]) -> None:
    runner = start_runner(site, workers=1)
    assert get(runner, "/cgi-bin/redirect_loop.py").startswith("500 ")
    assert "internal redirects" in (site / ".cgirt/logs/error.log").read_text()
    assert get(runner, "/cgi-bin/hello.py") == "200 Hello, world!\n"


def test_admin_limits_the_modes_a_site_may_choose(site: Path, tmp_path: Path,
                                                  start_runner: Callable[..., Runner]) -> None:
    conf = tmp_path / "limits.toml"
    conf.write_text('[runner]\nallowed_modes = ["persistent"]\n')
    (site / "cgi-bin" / ".cgirt-mode").write_text("fork\n")
    runner = start_runner(site, "--config", str(conf), workers=1)
    pids = {get(runner, "/cgi-bin/pid.py") for _ in range(3)}
    assert len(pids) == 1


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_large_bodies_keep_worker_memory_bounded(site: Path, start_runner: Callable[..., Runner]) -> None:
    import hashlib
    runner = start_runner(site, workers=1)
    (worker,) = runner.worker_pids()
    assert get(runner, "/cgi-bin/hello.py").startswith("200")
    before = _peak_rss_kib(worker)
    data = os.urandom(10 * 1024 * 1024)
    resp = request(runner.address, cgi_params("/cgi-bin/stream_in.py", method="POST",
                                              CONTENT_LENGTH=str(len(data))), body=data)
    assert resp.body.split() == [b"10485760", hashlib.sha256(data).hexdigest().encode()]
    resp = request(runner.address, cgi_params("/cgi-bin/big.py"))
    assert len(resp.body) == 20 * 1024 * 1024
    growth_mib = (_peak_rss_kib(worker) - before) / 1024
    assert growth_mib < 8, f"worker peak RSS grew by {growth_mib:.1f} MiB for 10 MB in, 20 MB out"


@pytest.mark.skipif(os.geteuid() != 0, reason="privilege separation needs root")
def test_workers_run_as_the_site_owner(site: Path, tmp_path: Path,
                                      start_runner: Callable[..., Runner]) -> None:
    import pwd
    owner = pwd.getpwnam("nobody")
    for p in [site, *site.rglob("*")]:
        os.chown(p, owner.pw_uid, owner.pw_gid, follow_symlinks=False)
    from tests.support.servers import make_traversable
    make_traversable(site)
    make_traversable(Path(os.path.realpath(sys.executable)))
    secret = tmp_path / "other-site-secret.txt"
    secret.write_text("not yours")
    secret.chmod(0o600)
    runner = start_runner(site, workers=1)
    assert get(runner, "/cgi-bin/whoami.py", str(secret)) == \
        f"200 {owner.pw_uid} {owner.pw_gid} PermissionError\n"
    (site / "cgi-bin" / ".cgirt-mode").write_text("fork")
    assert get(runner, "/cgi-bin/whoami.py", str(secret)).startswith(f"200 {owner.pw_uid} ")


def test_fork_mode_children_come_from_a_clean_template(site: Path, start_runner: Callable[..., Runner]) -> None:
    runner = start_runner(site, workers=1)
    (worker,) = runner.worker_pids()
    assert get(runner, "/cgi-bin/dirty_library.py").startswith("200 left something")
    seen = set()
    for _ in range(3):
        word, pid, parent = get(runner, "/cgi-bin/forked/clean.py").split()[1:]
        assert word == "clean"
        assert int(parent) != worker  # a child of the template, not of the worker
        seen.add(pid)
    assert len(seen) == 3


def _sockets(pid: int) -> set[str]:
    fds = Path(f"/proc/{pid}/fd")
    return {link for link in map(os.readlink, fds.iterdir()) if link.startswith("socket:")}


def test_no_fork_template_until_a_fork_mode_request_then_from_boot(
        site: Path, start_runner: Callable[..., Runner]) -> None:
    runner = start_runner(site, workers=1)
    (worker,) = runner.worker_pids()
    assert get(runner, "/cgi-bin/pid.py") == f"200 {worker}\n"
    assert children_of(worker) == []  # persistent only: no template, no warm-up
    # A directory switched to fork mode later: its next request runs in a template's child.
    (site / "cgi-bin" / "clean.py").write_text((site / "cgi-bin/forked/clean.py").read_text())
    (site / "cgi-bin" / ".cgirt-mode").write_text("fork\n")
    word, pid, parent = get(runner, "/cgi-bin/clean.py").split()[1:]
    assert word == "clean" and worker not in (int(pid), int(parent))
    # This worker had run a script: its template was made late, so it retires after that
    # request, and the runner's next workers make theirs at boot, before any script runs.
    wait_for(lambda: worker not in runner.worker_pids(), 20, "the worker to retire")
    wait_for(lambda: len(runner.worker_pids()) == 1, 20, "a new worker")
    (worker,) = runner.worker_pids()
    wait_for(lambda: len(children_of(worker)) == 1, 20, "the new worker's template")
    word, _, parent = get(runner, "/cgi-bin/clean.py").split()[1:]
    assert word == "clean" and children_of(worker) == [int(parent)]


def test_a_clean_worker_makes_its_template_at_its_first_fork_mode_request_and_stays(
        site: Path, start_runner: Callable[..., Runner]) -> None:
    runner = start_runner(site, workers=1)
    (worker,) = runner.worker_pids()
    assert children_of(worker) == []
    word, _, parent = get(runner, "/cgi-bin/forked/clean.py").split()[1:]
    assert word == "clean" and children_of(worker) == [int(parent)]
    # Made during that request, it kept no socket of the worker's but the master's listener
    # and its own line to the worker: not that request's connection.
    assert len(_sockets(int(parent)) - _sockets(runner.pid)) == 1
    assert get(runner, "/cgi-bin/pid.py") == f"200 {worker}\n"  # the same worker serves on


def test_a_site_whose_mode_is_fork_has_its_templates_from_boot(
        site: Path, start_runner: Callable[..., Runner]) -> None:
    runner = start_runner(site, "--mode", "fork", workers=2)
    wait_for(lambda: [len(children_of(w)) for w in runner.worker_pids()] == [1, 1], 20,
             "each worker's template")


@pytest.mark.parametrize("script, status", [("os_exit.py", "502"), ("segfault.py", "502"),
                                            ("loop_forever.py", "504"), ("crash.py", "500")])
def test_fork_mode_faults(site: Path, start_runner: Callable[..., Runner], script: str, status: str) -> None:
    (site / "cgi-bin" / ".cgirt-mode").write_text("fork")
    runner = start_runner(site, "--timeout", "1", workers=1)
    (worker,) = runner.worker_pids()
    assert get(runner, f"/cgi-bin/{script}").startswith(status)
    assert get(runner, "/cgi-bin/hello.py") == "200 Hello, world!\n"
    assert runner.worker_pids() == [worker]  # the worker itself is never hurt


def test_at_exit_the_runner_removes_its_status_socket_through_no_link(site: Path,
                                                                      tmp_path: Path) -> None:
    # The master may be root; the site's owner swaps .cgirt/ for a link while it serves.
    runner = Runner(site, tmp_path)
    state = site / ".cgirt"
    assert (state / "status.sock").is_socket()
    elsewhere = tmp_path / "another-site-state"
    elsewhere.mkdir()
    (elsewhere / "status.sock").write_text("another site's\n")
    state.rename(site / ".cgirt.moved")
    state.symlink_to(elsewhere)
    runner.stop()
    assert (elsewhere / "status.sock").read_text() == "another site's\n"
    assert os.listdir(elsewhere) == ["status.sock"]


def test_the_sites_own_links_keep_working_for_the_runner(site: Path, tmp_path: Path) -> None:
    # The admin's site path through a link; the owner's link to a folder of the cgi root.
    linked = tmp_path / "www"
    linked.symlink_to(site)
    (site / "cgi-bin" / "v2").mkdir()
    (site / "cgi-bin" / "hello.py").rename(site / "cgi-bin" / "v2" / "hello.py")
    (site / "cgi-bin" / "tools").symlink_to("v2")
    runner = Runner(linked, tmp_path)
    try:
        assert get(runner, "/cgi-bin/tools/hello.py").startswith("200 ")
        assert get(runner, "/cgi-bin/crash.py").startswith("500")
        pid_file = site / ".cgirt" / "runner.pid"
        assert pid_file.read_text().strip() == str(runner.pid)
        assert (site / ".cgirt" / "status.sock").is_socket()
        log = site / ".cgirt" / "logs" / "error.log"
        wait_for(lambda: "ZeroDivisionError" in log.read_text(), 30, "the traceback logged")
    finally:
        runner.stop()
    assert not pid_file.exists() and not (site / ".cgirt" / "status.sock").exists()
    assert "refused" not in (tmp_path / "runner.log").read_text()
