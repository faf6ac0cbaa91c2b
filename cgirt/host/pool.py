"""A site's process manager, in PHP-FPM's vocabulary: what to start and what to retire.

Decided from what the master sees of the site at one instant. Pure: unit-tested as is.

- static:   always `workers` workers.
- ondemand: none until a connection waits on the site's socket and no worker is free to
            take it; a worker without a request for `idle_timeout` seconds exits.
- dynamic:  at least `min_spare` free workers; free ones beyond `max_spare` exit after
            `idle_timeout` seconds; a waiting connection with none free starts one.
`limit` (the site's max_workers) bounds all three; the host-wide cap is the master's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .settings import PoolSettings


@dataclass(frozen=True)
class PoolView:
    live: int  # workers not asked to stop, booting ones included
    booting: int
    idle: list[tuple[float, int]] = field(default_factory=list)  # (seconds idle, slot)
    waiting: bool = False  # a connection waits on the site's socket


@dataclass(frozen=True)
class Decision:
    start: int = 0
    retire: tuple[int, ...] = ()  # slots


def decide(pool: PoolSettings, workers: int, limit: int, view: PoolView) -> Decision:
    room = max(0, limit - view.live)
    free = len(view.idle) + view.booting
    if pool.pm == "static":
        return Decision(start=max(0, workers - view.live))
    if pool.pm == "ondemand":
        start = 1 if view.waiting and free == 0 else 0
        retire = tuple(slot for idle, slot in view.idle if idle >= pool.idle_timeout)
        return Decision(start=min(start, room), retire=retire)
    start = max(0, pool.min_spare - free)
    if view.waiting and free == 0:
        start = max(start, 1)
    longest_first = sorted(view.idle, reverse=True)
    excess = longest_first[:max(0, len(view.idle) - pool.max_spare)]
    retire = tuple(slot for idle, slot in excess if idle >= pool.idle_timeout)
    return Decision(start=min(start, room), retire=retire)
