"""The scoreboard: what each worker is doing, in shared memory that the master reads.

One slot per worker in an anonymous shared mapping made before any fork. A worker writes only
its own slot and the master only reads it (and clears it once the worker is gone), so there
is no lock on the request path: a request costs two writes into the slot at its start, two
at its end and one getrusage(). Each write is framed by a sequence number (a seqlock): the
number is odd while a write is under way, and a reader that sees it odd, or changed under
it, reads again, so it never mixes two requests' fields.

The master's deadline check reads only `started` and `booted`, each one aligned word, and
needs no retry.
"""

from __future__ import annotations

import mmap
import resource
import struct
import time
from dataclasses import dataclass

SLOT_SIZE = 512
_HEAD = struct.Struct("=qdqqddqH")  # seq, started, booted, requests, cpu, duration, rss, label length
LABEL_SIZE = SLOT_SIZE - _HEAD.size
_FULL = struct.Struct(f"=qdqqddqH{LABEL_SIZE}s")
_STARTED_AT = struct.Struct("=dq")  # started, booted: at offset 8
_SEQ = struct.Struct("=q")


@dataclass(frozen=True)
class SlotView:
    """One worker's slot as read at one moment."""

    started: float  # time.monotonic() when its current request started; 0 when idle
    booted: bool
    requests: int  # requests it has started
    last_cpu: float  # seconds of CPU from the end of its previous request to the end of its last
    last_duration: float  # seconds its last finished request took
    peak_rss_kib: int  # the worker's peak resident size at the end of its last request
    method: str
    uri: str
    script: str


class Scoreboard:
    """Slots for `size` workers; made in the master before any worker is forked."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._mem = mmap.mmap(-1, SLOT_SIZE * size)

    # -- what the supervisor's deadline check and reaping use ------------------------------

    def set(self, index: int, started: float, booted: int) -> None:
        """Clear a slot (master: before a spawn and after a worker is reaped)."""
        _FULL.pack_into(self._mem, index * SLOT_SIZE, 0, started, booted, 0, 0.0, 0.0, 0, 0, b"")

    def get(self, index: int) -> tuple[float, int]:
        started, booted = _STARTED_AT.unpack_from(self._mem, index * SLOT_SIZE + 8)
        return started, booted

    # -- the reader ------------------------------------------------------------------------

    def read(self, index: int) -> SlotView:
        """A consistent copy of one slot (retried while a write is under way)."""
        offset = index * SLOT_SIZE
        for _ in range(1000):
            raw = self._mem[offset:offset + SLOT_SIZE]
            seq = _SEQ.unpack_from(raw)[0]
            if seq & 1 == 0 and _SEQ.unpack_from(self._mem, offset)[0] == seq:
                break
        # else: a writer stopped mid-write (killed): its last fields are as good as any
        (_, started, booted, requests, cpu, duration, rss, length, label) = _FULL.unpack(raw)
        method, uri, script = (label[:length].decode("utf-8", "replace").split("\0") + ["", "", ""])[:3]
        return SlotView(started, bool(booted), requests, cpu, duration, rss, method, uri, script)

    def writer(self, index: int) -> "SlotWriter":
        return SlotWriter(self._mem, index * SLOT_SIZE)


class SlotWriter:
    """The worker's side of its slot; it keeps its own copy of the fields it does not change."""

    def __init__(self, mem: mmap.mmap, offset: int) -> None:
        self._mem = mem
        self._offset = offset
        self._seq = 0
        self._requests = 0
        self._started = 0.0
        self._cpu_mark = 0.0
        self._cpu = self._duration = 0.0  # of the last request
        self._rss = 0
        self._label_len = 0

    def booted(self) -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self._cpu_mark = usage.ru_utime + usage.ru_stime
        self._seq += 2
        _FULL.pack_into(self._mem, self._offset, self._seq - 1, 0.0, 1, 0, 0.0, 0.0, 0, 0, b"")
        _SEQ.pack_into(self._mem, self._offset, self._seq)

    # The two below are the whole per-request cost: each a write framed by the sequence
    # number; the end of a request leaves the label in place (it shows the last request).

    def request_started(self, method: str, uri: str, script: str) -> float:
        self._requests += 1
        self._started = started = time.monotonic()
        label = f"{method}\0{uri}\0{script}".encode("utf-8", "surrogateescape")[:LABEL_SIZE]
        self._label_len = len(label)
        self._seq += 2
        _FULL.pack_into(self._mem, self._offset, self._seq - 1, started, 1, self._requests,
                        self._cpu, self._duration, self._rss, self._label_len, label)
        _SEQ.pack_into(self._mem, self._offset, self._seq)
        return started

    def request_finished(self) -> None:
        now = time.monotonic()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu = usage.ru_utime + usage.ru_stime
        self._cpu, self._duration = cpu - self._cpu_mark, now - self._started
        self._rss = usage.ru_maxrss
        self._cpu_mark = cpu
        self._seq += 2
        _HEAD.pack_into(self._mem, self._offset, self._seq - 1, 0.0, 1, self._requests,
                        self._cpu, self._duration, self._rss, self._label_len)
        _SEQ.pack_into(self._mem, self._offset, self._seq)
