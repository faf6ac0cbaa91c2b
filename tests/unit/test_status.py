"""The status formats: PHP-FPM's text and JSON fields, OpenMetrics a real parser accepts."""

from __future__ import annotations

import json

from prometheus_client.openmetrics.parser import text_string_to_metric_families

from cgirt.status import PoolStatus, WorkerStatus, render

NOW = 1_800_000_100.0


def pool(name: str = "shop", queue: int | None = 3) -> PoolStatus:
    workers = (
        WorkerStatus(101, "Running", NOW - 50, 7, "GET", "/cgi-bin/a.py?q=\"x\"\n", "/s/cgi-bin/a.py",
                     1.5, 0.25, 20480),
        WorkerStatus(102, "Idle", NOW - 40, 3, "POST", "/cgi-bin/b.py", "/s/cgi-bin/b.py",
                     0.002, 0.001, 19000),
    )
    return PoolStatus(name, "static", NOW - 100, 10, queue, 5, 256 if queue is not None else None,
                      1, 1, 2, 2, 4, 1, workers)


def test_text_has_php_fpm_fields_and_full_adds_each_worker() -> None:
    text = render([pool()], "text", full=False, now=NOW).decode()
    assert "pool:                 shop\n" in text
    for line in ("process manager:      static", "start since:          100",
                 "accepted conn:        10", "listen queue:         3", "max listen queue:     5",
                 "listen queue len:     256", "idle processes:       1",
                 "active processes:     1", "total processes:      2",
                 "max active processes: 2", "max children reached: 4", "slow requests:        1"):
        assert line + "\n" in text
    assert "pid:" not in text
    full = render([pool()], "text", full=True, now=NOW).decode()
    assert "pid:                      101\n" in full and "state:                    Running" in full
    assert "request duration:         1500000\n" in full  # microseconds, as PHP-FPM
    assert "script:                   /s/cgi-bin/b.py\n" in full


def test_json_of_several_pools() -> None:
    data = json.loads(render([pool("a"), pool("b", queue=None)], "json", full=True, now=NOW))
    a, b = data["pools"]
    assert (a["pool"], a["accepted conn"], a["listen queue"], a["start since"]) == ("a", 10, 3, 100)
    assert b["listen queue"] is None and b["listen queue len"] is None
    w = a["processes"][0]
    assert (w["pid"], w["state"], w["requests"], w["request URI"]) == (101, "Running", 7,
                                                                       "/cgi-bin/a.py?q=\"x\"\n")
    assert w["last request cpu seconds"] == 0.25 and w["peak rss bytes"] == 20480 * 1024
    assert "processes" not in json.loads(render([pool()], "json", full=False, now=NOW))["pools"][0]


def test_openmetrics_parses_with_prometheus_client() -> None:
    text = render([pool('we"ird\\name'), pool("b", queue=None)], "openmetrics", full=True,
                  now=NOW).decode()
    assert text.endswith("# EOF\n")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    weird = (("pool", 'we"ird\\name'),)
    assert samples[("cgirt_accepted_connections_total", weird)] == 10
    assert samples[("cgirt_active_processes", weird)] == 1
    assert samples[("cgirt_listen_queue", weird)] == 3
    assert ("cgirt_listen_queue", (("pool", "b"),)) not in samples  # unknown: left out
    assert samples[("cgirt_worker_busy", (("pid", "101"),) + weird)] == 1
    assert samples[("cgirt_worker_peak_rss_bytes", (("pid", "102"),) + weird)] == 19000 * 1024
    plain = render([pool()], "openmetrics", full=False, now=NOW).decode()
    assert "cgirt_worker_" not in plain
    assert list(text_string_to_metric_families(plain))


def test_the_html_page_draws_itself_from_the_json() -> None:
    page = render([pool()], "html", full=False, now=NOW).decode()
    assert page.startswith("<!DOCTYPE html>") and 'fetch("?json&full"' in page
    assert "setInterval(refresh" in page


def test_json_reads_back_into_the_same_pools() -> None:
    from cgirt.status import pools_from_json

    pools = [pool("a"), pool("b", queue=None)]
    again = pools_from_json(render(pools, "json", full=True, now=NOW))
    assert render(again, "text", full=True, now=NOW) == render(pools, "text", full=True, now=NOW)
