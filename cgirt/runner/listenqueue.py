"""How many connections wait in a listening socket's accept queue, and its backlog, exactly.

Linux answers both for the socket itself, without a scan of /proc/net (whose unix table has
no queue length at all):

- TCP: getsockopt(TCP_INFO) on a listening socket reports the accept queue in
  `tcpi_unacked` and the backlog in `tcpi_sacked` (net/ipv4/tcp.c, tcp_get_info), what
  `ss -lt` shows as Recv-Q and Send-Q.
- unix: a sock_diag netlink request for the socket's inode with UDIAG_SHOW_RQLEN: for a
  listening socket the kernel answers the connections waiting and the backlog
  (net/unix/diag.c, sk_diag_show_rqlen), what `ss -lx` shows.

Elsewhere (or without sock_diag) the answer is None: unknown, never a guess.
"""

from __future__ import annotations

import os
import select
import socket
import struct

_TCP_INFO_QUEUE = struct.Struct("=II")  # tcpi_unacked, tcpi_sacked
_TCP_INFO_QUEUE_AT = 24  # after 8 one-byte fields and rto, ato, snd_mss, rcv_mss

_TCP_LISTEN = 10  # the state of a listening socket, TCP's and unix's alike
NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 1
NLMSG_ERROR = 2
UDIAG_SHOW_RQLEN = 0x10
UNIX_DIAG_RQLEN = 4
_NLMSGHDR = struct.Struct("=IHHII")
_UNIX_DIAG_REQ = struct.Struct("=BBHIIIII")  # family, protocol, pad, states, ino, show, cookie[2]
_UNIX_DIAG_MSG = struct.Struct("=BBBBIII")
_RTATTR = struct.Struct("=HH")
_NO_COOKIE = 0xFFFFFFFF


def listen_queue(sock: socket.socket) -> tuple[int, int] | None:
    """(connections waiting to be accepted, backlog) of a listening socket, or None."""
    try:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and hasattr(socket, "TCP_INFO"):
            info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
            if len(info) < _TCP_INFO_QUEUE_AT + _TCP_INFO_QUEUE.size or info[0] != _TCP_LISTEN:
                return None  # the fields mean something else for a socket not listening
            queued, backlog = _TCP_INFO_QUEUE.unpack_from(info, _TCP_INFO_QUEUE_AT)
            return queued, backlog
        if sock.family == socket.AF_UNIX:
            return _unix_queue(os.fstat(sock.fileno()).st_ino)
    except OSError:
        pass
    return None


def _unix_queue(inode: int) -> tuple[int, int] | None:
    req = _UNIX_DIAG_REQ.pack(socket.AF_UNIX, 0, 0, 0xFFFFFFFF, inode, UDIAG_SHOW_RQLEN,
                              _NO_COOKIE, _NO_COOKIE)
    msg = _NLMSGHDR.pack(_NLMSGHDR.size + len(req), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, 1, 0) + req
    # Non-blocking from its creation: a timeout would cost an ioctl and a poll before each
    # call (a sample runs every turn of the master's loop). The kernel answers within sendto,
    # so the reply is already queued; the wait is only a safeguard.
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK,
                       NETLINK_SOCK_DIAG) as nl:
        nl.sendto(msg, (0, 0))
        try:
            data = nl.recv(8192)
        except BlockingIOError:
            if not select.select([nl], [], [], 1.0)[0]:
                return None
            data = nl.recv(8192)
    length, kind, _, _, _ = _NLMSGHDR.unpack_from(data)
    if kind == NLMSG_ERROR or kind != SOCK_DIAG_BY_FAMILY:
        return None
    state = _UNIX_DIAG_MSG.unpack_from(data, _NLMSGHDR.size)[2]
    if state != _TCP_LISTEN:
        return None  # the queue lengths of a connected socket are bytes, not connections
    pos = _NLMSGHDR.size + _UNIX_DIAG_MSG.size
    while pos + _RTATTR.size <= length:
        attr_len, attr_type = _RTATTR.unpack_from(data, pos)
        if attr_len < _RTATTR.size:
            break
        if attr_type == UNIX_DIAG_RQLEN:
            queued, backlog = _TCP_INFO_QUEUE.unpack_from(data, pos + _RTATTR.size)
            return queued, backlog
        pos += (attr_len + 3) & ~3
    return None
