"""The Markdown report and the PNG chart, from one run's results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .live import LiveResult
from .load import Result

LABELS = {
    "classic": "classic CGI (fcgiwrap)",
    "cgirt": "cgirt persistent",
    "cgirt-keep": "cgirt keep-alive",
    "cgirt-fork": "cgirt fork mode",
    "wsgi": "bare WSGI on flup",
    "pyfloor": "Python floor (no sandbox)",
    "php": "PHP-FPM",
    "cgirt-base": "cgirt persistent, {ref}",
}
ORDER = ["classic", "cgirt-fork", "cgirt-base", "cgirt", "cgirt-keep", "wsgi", "pyfloor", "php"]
COLOURS = {"classic": "#9e9e9e", "cgirt-fork": "#90caf9", "cgirt-base": "#b0bec5",
           "cgirt": "#1565c0", "cgirt-keep": "#0d47a1", "wsgi": "#66bb6a", "pyfloor": "#c5e1a5",
           "php": "#8e24aa"}


def _label(backend: str, meta: dict[str, Any]) -> str:
    return LABELS[backend].format(ref=meta.get("compare_ref") or "")


def _rps(results: dict[str, Result], backend: str, script: str) -> float | None:
    r = results.get(f"{backend}/{script}")
    return r.median("rps") if r else None


def ratio(results: dict[str, Result], a: tuple[str, str], b: tuple[str, str]) -> float | None:
    x, y = _rps(results, *a), _rps(results, *b)
    return x / y if x and y else None


def _fmt_ratio(v: float | None) -> str:
    return "–" if v is None else (f"{v:.2f}×" if v < 10 else f"{v:.0f}×")


def targets(results: dict[str, Result], live: LiveResult | None) -> list[tuple[str, str, str, bool]]:
    """(target, wanted, measured, met) for issue 5's targets."""
    out = []

    def add(name: str, wanted: str, value: float | None, bound: float) -> None:
        if value is not None:
            out.append((name, wanted, _fmt_ratio(value), value >= bound))

    add("hello.py vs classic CGI hello.py", "≥ 50×", ratio(results, ("cgirt", "hello"), ("classic", "hello")), 50)
    add("form.py vs classic CGI form.py", "≥ 150×", ratio(results, ("cgirt", "form"), ("classic", "form")), 150)
    add("cgirt hello vs bare WSGI hello (flup)", "≥ 0.9×", ratio(results, ("cgirt", "hello"), ("wsgi", "hello")), 0.9)
    add("form.py vs PHP-FPM form.php", "≥ 1.0×", ratio(results, ("cgirt", "form"), ("php", "form")), 1.0)
    a, b = results.get("cgirt/form"), results.get("php/form")
    if a and b:
        v = a.median("p99_ms") / b.median("p99_ms")
        out.append(("form.py p99 vs PHP-FPM form.php p99", "≤ 2×", f"{v:.2f}×", v <= 2))
    add("fork mode hello vs classic CGI hello", "≥ 10×", ratio(results, ("cgirt-fork", "hello"), ("classic", "hello")), 10)
    add("fork mode form vs classic CGI form", "≥ 10×", ratio(results, ("cgirt-fork", "form"), ("classic", "form")), 10)
    if live is not None:
        out.append(("stale responses after publish", "0", str(live.stale), live.stale == 0))
    return out


def php_targets(results: dict[str, Result],
                meta: dict[str, Any]) -> list[tuple[str, str, str, bool]]:
    """(target, wanted, measured, met) for issue 14's: PHP-FPM's speed, same nginx and workers."""
    out = []
    for s in ("hello", "form"):
        ours, php = results.get(f"cgirt/{s}"), results.get(f"php/{s}")
        if not (ours and php):
            continue
        v = ours.median("rps") / php.median("rps")
        out.append((f"{s}.py vs PHP-FPM {s}.php, req/s", "≥ 1.0×", f"{v:.2f}×", v >= 1.0))
        v = ours.median("p99_ms") / php.median("p99_ms")
        out.append((f"{s}.py p99 vs PHP-FPM's", "≤ 1.5×", f"{v:.2f}×", v <= 1.5))
        v = ours.cpu_us_per_request("cpu_backend") / php.cpu_us_per_request("cpu_backend")
        out.append((f"{s}.py backend CPU per request vs PHP-FPM's", "≤ 1.2×", f"{v:.2f}×", v <= 1.2))
    floor = meta.get("fork_floor_us")
    for s in ("hello", "form"):
        fork = results.get(f"cgirt-fork/{s}")
        if floor and fork:
            v = fork.cpu_us_per_request("cpu_backend") / floor
            out.append((f"fork mode {s}.py CPU per request vs the fork floor", "≤ 1.5×",
                        f"{v:.2f}×", v <= 1.5))
    return out


def write(out_dir: Path, results: dict[str, Result], live: LiveResult | None,
          meta: dict[str, Any]) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / "bench.png"
    chart(png, results, meta)
    md = out_dir / "REPORT.md"
    md.write_text(markdown(results, live, meta, png.name))
    raw = {
        "meta": meta,
        "results": {k: {"rounds": [vars(r) for r in v.rounds], "rss_mib": v.rss_mib}
                    for k, v in results.items()},
        "live": None if live is None else {**vars(live), "summary": live.summary()},
    }
    (out_dir / "results.json").write_text(json.dumps(raw, indent=1, default=str) + "\n")
    return md, png


def _ordered(results: dict[str, Result]) -> list[Result]:
    return sorted(results.values(), key=lambda r: (r.target.script != "hello",
                                                   ORDER.index(r.target.backend)))


def markdown(results: dict[str, Result], live: LiveResult | None, meta: dict[str, Any],
             png: str) -> str:
    m = meta
    lines = [
        "# cgirt benchmark",
        "",
        f"Run {m['started']} with `{m['command']}` ({m['mode']}): {m['rounds']} interleaved rounds of "
        f"{m['seconds']} s per target after a {m['warmup']} s warm-up, wrk with {m['connections']} "
        f"connections and 1 thread, {m['workers']} workers per backend, one nginx "
        f"({m['nginx']}, 1 worker process) in front of every backend. Figures are medians over the "
        "rounds; the machine is shared and noisy, so read the ratios (same run, interleaved), "
        "not the absolute numbers.",
        "",
        f"![requests per second and CPU per request]({png})",
        "",
        "## Targets (issue 5)",
        "",
        "| target | wanted | measured | |",
        "|---|---|---|---|",
    ]
    for name, wanted, measured, met in targets(results, live):
        lines.append(f"| {name} | {wanted} | {measured} | {'met' if met else '**not met**'} |")
    lines += _fork_ceiling(results, meta)
    lines += ["", "## Targets (issue 14: faster than PHP-FPM)", "",
              "| target | wanted | measured | |", "|---|---|---|---|"]
    for name, wanted, measured, met in php_targets(results, meta):
        lines.append(f"| {name} | {wanted} | {measured} | {'met' if met else '**not met**'} |")
    lines += [
        "",
        "## Throughput, latency, CPU and memory",
        "",
        "CPU is microseconds of CPU time per request (user + system, counted before and after "
        "each round; see \"CPU accounting\" below) for the backend's processes, nginx and wrk. "
        "RSS is the mean resident memory of one backend worker after the rounds.",
        "",
        "| target | req/s | p50 ms | p99 ms | CPU backend µs | CPU nginx µs | CPU wrk µs | worker RSS MiB | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in _ordered(results):
        rss = sum(r.rss_mib) / len(r.rss_mib) if r.rss_mib else float("nan")
        errors = sum(x.errors for x in r.rounds)
        lines.append(
            f"| {_label(r.target.backend, meta)} {r.target.script} | {r.median('rps'):,.0f} | "
            f"{r.median('p50_ms'):.2f} | {r.median('p99_ms'):.2f} | "
            f"{r.cpu_us_per_request('cpu_backend'):,.0f} | {r.cpu_us_per_request('cpu_nginx'):,.0f} | "
            f"{r.cpu_us_per_request('cpu_wrk'):,.0f} | {rss:.1f} | {errors} |")
    lines += ["", "## Ratios (requests per second, same run)", "",
              "| target | vs classic CGI | vs bare WSGI hello | vs PHP-FPM |", "|---|---:|---:|---:|"]
    for r in _ordered(results):
        b, s = r.target.backend, r.target.script
        lines.append(f"| {_label(b, meta)} {s} | {_fmt_ratio(ratio(results, (b, s), ('classic', s)))} | "
                     f"{_fmt_ratio(ratio(results, (b, s), ('wsgi', 'hello')))} | "
                     f"{_fmt_ratio(ratio(results, (b, s), ('php', s)))} |")
    if meta.get("compare_ref"):
        lines += ["", f"## This tree against {meta['compare_ref']} (same run, interleaved)", "",
                  "| script | req/s ratio (this tree / base) | p99 base ms | p99 this ms |",
                  "|---|---:|---:|---:|"]
        for script in ("hello", "form"):
            ours, base = results.get(f"cgirt/{script}"), results.get(f"cgirt-base/{script}")
            if ours and base:
                lines.append(f"| {script} | {ours.median('rps') / base.median('rps'):.2f}× | "
                             f"{base.median('p99_ms'):.2f} | {ours.median('p99_ms'):.2f} |")
    if live is not None:
        summary = live.summary()
        lines += [
            "", "## Upload to live", "",
            f"Method: {live.method}.", "",
            f"{live.publishes} publishes of a new `cgi-bin/live.py` while wrk loaded it "
            f"({live.background_requests:,} background requests); after each publish returned, "
            f"{live.probes_after_publish // max(live.publishes, 1)} requests each "
            f"({live.probes_after_publish} in all) checked the version.", "",
            f"- stale responses (old version after the publish returned): **{live.stale}**",
            f"- errors: {live.errors}",
            f"- publish returned → first response of the new version: median "
            f"{summary['median_ms']:.2f} ms, p99 {summary['p99_ms']:.2f} ms, "
            f"max {summary['max_ms']:.2f} ms (one request's round trip)",
        ]
    lines += ["", "## What ran", ""]
    lines += [f"- {k}: {v}" for k, v in m["environment"].items()]
    lines += ["", "Per-round figures are in `results.json`.", ""]
    return "\n".join(lines)


def _fork_ceiling(results: dict[str, Result], meta: dict[str, Any]) -> list[str]:
    """What fork mode could reach here at best: classic CGI's CPU over a bare fork's."""
    floor = meta.get("fork_floor_us")
    out = []
    for s in ("hello", "form"):
        classic = results.get(f"classic/{s}")
        if floor and classic:
            cpu = classic.cpu_us_per_request("cpu_backend")
            out.append(f"classic CGI {s} costs {cpu:,.0f} µs of backend CPU per request, so fork "
                       f"mode can be at most {cpu / floor:.1f}× as fast on this machine")
    if not out:
        return []
    return ["", f"Fork mode's ceiling: a bare fork and exit of a process like the fork-mode "
            f"template costs {floor:,.0f} µs of CPU here (see \"fork floor\" below), before any "
            "request work; " + "; ".join(out) + " (the machine's CPU, not the wait, bounds "
            "throughput in these rounds)."]


def chart(path: Path, results: dict[str, Result], meta: dict[str, Any]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ordered = _ordered(results)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 6.2), gridspec_kw={"width_ratios": [1.15, 1]})
    backends = [b for b in ORDER if any(r.target.backend == b for r in ordered)]
    scripts = ["hello", "form"]
    width = 0.8 / len(backends)
    for i, b in enumerate(backends):
        for j, s in enumerate(scripts):
            r = results.get(f"{b}/{s}")
            if r is None:
                continue
            x = j + (i - (len(backends) - 1) / 2) * width
            v = r.median("rps")
            ax1.bar(x, v, width * 0.92, color=COLOURS[b], label=_label(b, meta))
            ax1.text(x, v * 1.08, f"{v:,.0f}", ha="center", va="bottom", fontsize=8, rotation=90)
    ax1.set_yscale("log")
    ax1.set_xticks(range(len(scripts)), ["hello (hello.py / hello.php)", "form (form.py / form.php)"])
    ax1.set_ylabel("requests per second (log scale; median of rounds)")
    ax1.set_ylim(top=ax1.get_ylim()[1] * 6)
    ax1.set_title("Throughput behind one nginx, same worker count")
    handles, labels = ax1.get_legend_handles_labels()
    seen = dict(zip(labels, handles))
    ax1.legend(seen.values(), seen.keys(), loc="upper left", fontsize=8, ncol=2)
    ax1.grid(axis="y", which="major", alpha=0.3)

    shown = [r for r in ordered if r.target.backend != "classic"]
    names = [f"{_label(r.target.backend, meta)} {r.target.script}" for r in shown]
    parts = [("cpu_backend", "backend", "#1565c0"), ("cpu_nginx", "nginx", "#ffa726"),
             ("cpu_wrk", "wrk", "#bdbdbd")]
    left = [0.0] * len(shown)
    for attr, label, colour in parts:
        vals = [r.cpu_us_per_request(attr) for r in shown]
        ax2.barh(range(len(shown)), vals, left=left, color=colour, label=label)
        left = [a + b for a, b in zip(left, vals)]
    for y, total in enumerate(left):
        ax2.text(total + max(left) * 0.01, y, f"{total:,.0f}", va="center", fontsize=8)
    ax2.set_yticks(range(len(shown)), names, fontsize=8)
    ax2.invert_yaxis()
    ax2.set_xlabel("CPU µs per request (median of rounds)")
    classic = [r for r in ordered if r.target.backend == "classic"]
    note = "; ".join(f"classic {r.target.script}: {sum(r.cpu_us_per_request(a) for a, _, _ in parts):,.0f} µs"
                     for r in classic)
    ax2.set_title("CPU per request" + (f"\n(off the scale: {note})" if note else ""), fontsize=10)
    ax2.legend(loc="lower right", fontsize=8)
    ax2.set_xlim(right=max(left) * 1.15)
    fig.suptitle(f"cgirt benchmark — {meta['started']} — {meta['mode']}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
