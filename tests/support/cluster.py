"""Several machines on this one: network namespaces, a file server, sshfs mounts.

`Lan` makes a private /24 on a bridge inside a "files" namespace, with one namespace per
extra machine and a leg for this (the root) namespace, so nginx and the FTP clients of a
test reach every machine. `FileServer` is sshd in the files namespace, `SshfsMount` a
machine's own mount of it: its own FUSE connection with its own attribute cache, exactly
what another machine would have. Processes enter a namespace with `nsenter --net` only, so
they share this machine's mounts (a mount made by one is a real mount, unmounted by path).

Everything is torn down by `close()`, in reverse, even after a failure half-way through.
"""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path
from typing import Callable, Sequence

from .procs import Proc, wait_for
from .servers import connectable, require

SSHD_CONFIG = """\
ListenAddress {address}
Port 22
HostKey {workdir}/host_key
AuthorizedKeysFile {workdir}/client_key.pub
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PidFile none
StrictModes no
Subsystem sftp internal-sftp
"""


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


class Lan:
    """A bridge in the files namespace; machine i is 10.a.b.(i+1); this namespace .254."""

    def __init__(self, tag: str, machines: Sequence[str]) -> None:
        require("ip")
        require("nsenter")
        self.tag = tag
        self._undo: list[Callable[[], None]] = []
        self.prefix = self._free_prefix()
        self.namespaces: dict[str, str] = {}
        self.addresses: dict[str, str] = {}
        try:
            for i, name in enumerate(["files", *machines]):
                ns = f"cgirt-{tag}-{name}"
                _run("ip", "netns", "add", ns)
                self._undo.append(lambda ns=ns: _run("ip", "netns", "del", ns))
                self.namespaces[name] = ns
                self.addresses[name] = f"{self.prefix}.{i + 1}"
                self.ip(name, "link", "set", "lo", "up")
            self.ip("files", "link", "add", "br0", "type", "bridge")
            self.ip("files", "addr", "add", f"{self.addresses['files']}/24", "dev", "br0")
            self.ip("files", "link", "set", "br0", "up")
            for i, name in enumerate(machines):
                self._leg(f"m{i}", self.namespaces[name], self.addresses[name])
            self.addresses["here"] = f"{self.prefix}.254"
            self._leg("h", None, self.addresses["here"])
        except BaseException:
            self.close()
            raise

    def _free_prefix(self) -> str:
        routes = subprocess.run(["ip", "-4", "route", "show", "table", "all"], check=True,
                                capture_output=True, text=True).stdout
        for _ in range(200):
            prefix = f"10.{random.randint(200, 250)}.{random.randint(0, 255)}"
            if f"{prefix}." not in routes:
                return prefix
        raise RuntimeError("no free 10.x.y.0/24 for the test network")

    def _leg(self, short: str, ns: str | None, address: str) -> None:
        """A veth pair: one end on the bridge, the other in `ns` (None: this namespace)."""
        outer, inner = f"cg{self.tag}{short}b", f"cg{self.tag}{short}"
        _run("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
        if ns is None:
            self._undo.append(lambda: _run("ip", "link", "del", inner))
        _run("ip", "link", "set", outer, "netns", self.namespaces["files"])
        self.ip("files", "link", "set", outer, "master", "br0")
        self.ip("files", "link", "set", outer, "up")
        if ns is not None:
            _run("ip", "link", "set", inner, "netns", ns)
            _run("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", inner)
            _run("ip", "-n", ns, "link", "set", inner, "up")
        else:
            _run("ip", "addr", "add", f"{address}/24", "dev", inner)
            _run("ip", "link", "set", inner, "up")

    def ip(self, machine: str, *args: str) -> None:
        _run("ip", "-n", self.namespaces[machine], *args)

    def enter(self, machine: str) -> list[str]:
        """The argv prefix that runs a command on `machine` (its network only)."""
        return ["nsenter", f"--net=/run/netns/{self.namespaces[machine]}"]

    def on_close(self, undo: Callable[[], None]) -> None:
        self._undo.append(undo)

    def close(self) -> None:
        errors: list[BaseException] = []
        while self._undo:
            try:
                self._undo.pop()()
            except Exception as exc:  # noqa: BLE001 - undo the rest, then report
                errors.append(exc)
        if errors:
            raise errors[0]


class FileServer:
    """sshd in the files namespace, exporting `export` over SFTP with a fresh key pair."""

    def __init__(self, lan: Lan, workdir: Path, export: Path) -> None:
        sshd = require("sshd")
        require("sshfs")
        workdir.mkdir(parents=True, exist_ok=True)
        export.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.export = export
        self.address = lan.addresses["files"]
        for key in ("host_key", "client_key"):
            _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(workdir / key))
        (workdir / "sshd_config").write_text(
            SSHD_CONFIG.format(address=self.address, workdir=workdir))
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation
        self.proc = Proc([*lan.enter("files"), sshd, "-D", "-e", "-f",
                          str(workdir / "sshd_config")], workdir / "sshd.log")
        lan.on_close(self.proc.stop)
        wait_for(lambda: not self.proc.alive() or _reachable(lan, self.address), 20,
                 "sshd in the files namespace")
        if not self.proc.alive():
            raise RuntimeError(f"sshd failed:\n{self.proc.output()}")


def _reachable(lan: Lan, address: str) -> bool:
    return connectable(f"{address}:22")


class SshfsMount:
    """`machine`'s own sshfs mount of the file server at `mountpoint`.

    `dir_cache=no` turns off sshfs's own cache (names and attributes for 20 s): what is
    left is the kernel's attribute cache (1 s), which forced stats bypass.
    """

    def __init__(self, lan: Lan, machine: str, server: FileServer, mountpoint: Path,
                 options: Sequence[str] = ("dir_cache=no",)) -> None:
        mountpoint.mkdir(parents=True, exist_ok=True)
        self.mountpoint = mountpoint
        key = server.workdir / "client_key"
        opts = ",".join([*options, f"IdentityFile={key}", "StrictHostKeyChecking=no",
                         "UserKnownHostsFile=/dev/null", "LogLevel=ERROR"])
        self.proc = Proc([*lan.enter(machine), "sshfs", "-f", "-o", opts,
                          f"root@{server.address}:{server.export}", str(mountpoint)],
                         server.workdir / f"sshfs-{machine}.log")
        lan.on_close(self.close)
        wait_for(lambda: not self.proc.alive() or os.path.ismount(mountpoint), 30,
                 f"the sshfs mount of {machine}")
        if not self.proc.alive():
            raise RuntimeError(f"sshfs failed:\n{self.proc.output()}")

    def close(self) -> None:
        if os.path.ismount(self.mountpoint):
            subprocess.run(["fusermount3", "-u", "-z", str(self.mountpoint)],
                           capture_output=True, timeout=30)
        self.proc.stop()
