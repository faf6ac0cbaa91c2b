"""The process managers' decisions, from what the master sees of a site at one instant."""

from __future__ import annotations

from cgirt.host.pool import Decision, PoolView, decide
from cgirt.host.settings import PoolSettings

ONDEMAND = PoolSettings(pm="ondemand", idle_timeout=10)
STATIC = PoolSettings(pm="static")
DYNAMIC = PoolSettings(pm="dynamic", min_spare=1, max_spare=2, idle_timeout=10)


def test_static_keeps_its_workers() -> None:
    assert decide(STATIC, 3, 3, PoolView(live=1, booting=0)) == Decision(start=2)
    assert decide(STATIC, 3, 3, PoolView(live=3, booting=0, idle=[(99.0, 0)])) == Decision()


def test_ondemand_starts_one_only_for_a_waiting_connection_nobody_can_take() -> None:
    assert decide(ONDEMAND, 2, 4, PoolView(live=0, booting=0)) == Decision()
    assert decide(ONDEMAND, 2, 4, PoolView(live=0, booting=0, waiting=True)) == Decision(start=1)
    # one booting or idle will take it
    assert decide(ONDEMAND, 2, 4, PoolView(live=1, booting=1, waiting=True)) == Decision()
    assert decide(ONDEMAND, 2, 4, PoolView(live=1, booting=0, idle=[(0.5, 3)], waiting=True)) == Decision()
    # all busy, room left: one more; at the limit: none
    assert decide(ONDEMAND, 2, 4, PoolView(live=3, booting=0, waiting=True)) == Decision(start=1)
    assert decide(ONDEMAND, 2, 4, PoolView(live=4, booting=0, waiting=True)) == Decision()


def test_ondemand_retires_workers_idle_for_idle_timeout() -> None:
    view = PoolView(live=3, booting=0, idle=[(10.0, 1), (9.9, 2)])
    assert decide(ONDEMAND, 2, 4, view) == Decision(retire=(1,))


def test_dynamic_keeps_spares_between_min_and_max() -> None:
    assert decide(DYNAMIC, 2, 4, PoolView(live=0, booting=0)) == Decision(start=1)
    assert decide(DYNAMIC, 2, 4, PoolView(live=2, booting=1)) == Decision()
    view = PoolView(live=4, booting=0, idle=[(30.0, 1), (20.0, 2), (5.0, 3), (11.0, 4)])
    assert decide(DYNAMIC, 2, 4, view) == Decision(retire=(1, 2))  # the two idle longest
    view = PoolView(live=3, booting=0, idle=[(5.0, 1), (4.0, 2), (3.0, 3)])
    assert decide(DYNAMIC, 2, 4, view) == Decision()  # not idle long enough yet
    assert decide(DYNAMIC, 2, 3, PoolView(live=3, booting=0, waiting=True)) == Decision()
