"""Several machines on this one: network namespaces, a file server, its clients' mounts.

`Lan` makes a private /24 on a bridge inside a "files" namespace, with one namespace per
extra machine and a leg for this (the root) namespace, so nginx and the FTP clients of a
test reach every machine. Two shared filesystems, the same to a test (`file_server(kind)`,
then `server.mount(machine, mountpoint)`): `FileServer` is sshd in the files namespace and
`SshfsMount` a machine's own mount of it; `GlusterServer` is glusterd with a one-brick
volume there and `GlusterMount` a machine's own GlusterFS client. Each mount is its own
FUSE connection with its own caches, exactly what another machine would have. Processes
enter a namespace with `nsenter --net` only, so they share this machine's mounts (a mount
made by one is a real mount, unmounted by path).

Everything is torn down by `close()`, in reverse, even after a failure half-way through.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
from pathlib import Path
from typing import Callable, Protocol, Sequence

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
        self._lan = lan

    def mount(self, machine: str, mountpoint: Path,
              options: Sequence[str] = ("dir_cache=no",)) -> Path:
        return SshfsMount(self._lan, machine, self, mountpoint, options).mountpoint


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
        _unmount(self.mountpoint)
        self.proc.stop()


def _unmount(mountpoint: Path) -> None:
    if os.path.ismount(mountpoint):
        subprocess.run(["fusermount3", "-u", "-z", str(mountpoint)],
                       capture_output=True, timeout=30)


GLUSTERD_VOL = """\
volume management
    type mgmt/glusterd
    option working-directory {workdir}/state
    option run-directory {workdir}/run
    option glusterd-sockfile {workdir}/run/glusterd.socket
    option transport-type socket
    option transport.socket.bind-address {address}
    option transport.socket.listen-port 24007
    option ping-timeout 0
    option event-threads 1
end-volume
"""

# What a runner host needs of a GlusterFS volume (INSTALL.md (d)): md-cache answers stats
# from its own cache inside the client, where no forced statx reaches (19 of 20 stale with
# it on); open-behind keeps a lazily opened fd that made a plain stat of a file replaced
# through another client fail with EBADFD.
GLUSTER_REQUIRED = {"performance.stat-prefetch": "off", "performance.open-behind": "off"}


class GlusterServer:
    """glusterd in the files namespace (its own state, run and log directories, listening
    on the files address only) with a volume of one brick, `VOLUME`; `export` is the file
    server's own client mount of it, where a test writes as the server would."""

    VOLUME = "cgirt"

    def __init__(self, lan: Lan, workdir: Path, export: Path) -> None:
        glusterd = require("glusterd")
        self._cli = require("gluster")
        require("glusterfs")
        self._lan = lan
        self.workdir = workdir
        self.address = lan.addresses["files"]
        for sub in ("state", "run", "log"):
            (workdir / sub).mkdir(parents=True, exist_ok=True)
        (workdir / "glusterd.vol").write_text(
            GLUSTERD_VOL.format(workdir=workdir, address=self.address))
        self._bricks: dict[str, int] = {}  # volume: its brick's pid
        self._brick_files: list[Path] = []
        self.proc = Proc([*lan.enter("files"), glusterd, "-N", "-f", str(workdir / "glusterd.vol"),
                          "-l", str(workdir / "log" / "glusterd.log")], workdir / "glusterd.out")
        lan.on_close(self.close)
        wait_for(lambda: not self.proc.alive() or (
            (workdir / "run" / "glusterd.socket").exists()
            and connectable(f"{self.address}:24007")), 30, "glusterd in the files namespace")
        if not self.proc.alive():
            raise RuntimeError(f"glusterd failed:\n{self.proc.output()}")
        self.add_volume(self.VOLUME, GLUSTER_REQUIRED)
        self.export = self.mount("files", export)

    def gluster(self, *args: str) -> str:
        out = subprocess.run(
            [*self._lan.enter("files"), self._cli, "--mode=script",
             f"--glusterd-sock={self.workdir / 'run' / 'glusterd.socket'}",
             f"--log-file={self.workdir / 'log' / 'cli.log'}", *args],
            capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"gluster {' '.join(args)}: {out.stdout}{out.stderr}")
        return out.stdout

    def add_volume(self, name: str, options: dict[str, str]) -> None:
        """A started volume `name` of one brick, with `options` (`gluster volume set`)."""
        brick = self.workdir / f"brick-{name}"
        # `force`: gluster refuses a brick on the root filesystem without it.
        self.gluster("volume", "create", name, f"{self.address}:{brick}", "force")
        for key, value in options.items():
            self.gluster("volume", "set", name, key, value)
        self.gluster("volume", "start", name)
        # The brick daemonizes out of glusterd's process group: its pid, and the socket and
        # log it keeps outside our directories, are remembered to be removed.
        vols = self.workdir / "run" / "vols" / name
        pidfile = Path(str(wait_for(lambda: next(
            (p for p in vols.glob("*.pid") if p.read_text().strip()), None), 30, "the brick")))
        pid = self._bricks[name] = int(pidfile.read_text())
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        for flag in (b"-S", b"-l"):
            if flag in argv:
                self._brick_files.append(Path(os.fsdecode(argv[argv.index(flag) + 1])))

    def mount(self, machine: str, mountpoint: Path, options: Sequence[str] = (),
              volume: str = VOLUME) -> Path:
        return GlusterMount(self._lan, machine, self, mountpoint, options, volume).mountpoint

    def close(self) -> None:
        try:
            for name in self._bricks:
                if self.proc.alive():
                    self.gluster("volume", "stop", name)
        finally:
            self.proc.stop()
            for pid in self._bricks.values():
                if _alive(pid):
                    os.kill(pid, signal.SIGKILL)
                wait_for(lambda: not _alive(pid), 15, "the brick to stop")
            for path in self._brick_files:
                path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


class GlusterMount:
    """`machine`'s own GlusterFS client of the volume at `mountpoint`, with the FUSE
    defaults unless `options` (glusterfs flags) say otherwise: attributes and names cached
    by the kernel for 1 s, which the forced stats bypass."""

    def __init__(self, lan: Lan, machine: str, server: GlusterServer, mountpoint: Path,
                 options: Sequence[str] = (), volume: str = GlusterServer.VOLUME) -> None:
        mountpoint.mkdir(parents=True, exist_ok=True)
        self.mountpoint = mountpoint
        log = server.workdir / "log" / f"mount-{machine}-{mountpoint.name}.log"
        self.proc = Proc([*lan.enter(machine), "glusterfs", "-N",
                          f"--volfile-server={server.address}",
                          f"--volfile-id={volume}", f"--log-file={log}", *options,
                          str(mountpoint)], server.workdir / f"glusterfs-{machine}.out")
        lan.on_close(self.close)
        wait_for(lambda: not self.proc.alive() or os.path.ismount(mountpoint), 30,
                 f"the GlusterFS mount of {machine}")
        if not self.proc.alive():
            raise RuntimeError(f"glusterfs failed:\n{self.proc.output()}\n{_tail(log)}")

    def close(self) -> None:
        _unmount(self.mountpoint)
        self.proc.stop()


def _tail(path: Path) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-20:])
    except FileNotFoundError:
        return ""


class SharedVolume(Protocol):
    """A file server as a test sees it, whichever the filesystem."""

    export: Path

    def mount(self, machine: str, mountpoint: Path, options: Sequence[str] = ...) -> Path:
        """`machine`'s own client mount at `mountpoint`; `options` replace the required
        ones (the filesystem's own spelling)."""


FILESYSTEMS = ("sshfs", "gluster")


def file_server(kind: str, lan: Lan, workdir: Path, export: Path) -> SharedVolume:
    """The file server of `kind` (one of FILESYSTEMS), with the client options INSTALL.md
    requires; `export` is where a test writes the volume directly."""
    if kind == "gluster":
        return GlusterServer(lan, workdir, export)
    return FileServer(lan, workdir, export)
