"""`python -m bench.instructions`: callgrind totals → instructions per request."""

from __future__ import annotations

import sys

import pytest

from bench import instructions


def test_the_summary_line_is_the_total() -> None:
    profile = "version: 1\ncreator: callgrind-3.19.0\nevents: Ir\nsummary: 1834963443\nfl=(1)\n"
    assert instructions.total_instructions(profile) == 1_834_963_443
    assert instructions.total_instructions("events: Ir\ntotals: 42\n") == 42


def test_a_profile_without_a_total_is_an_error() -> None:
    with pytest.raises(ValueError):
        instructions.total_instructions("events: Ir\n")


def test_start_up_cancels_out() -> None:
    # hotpath runs one request, then five batches of N // 5: 101 and 601 requests.
    startup, each = 1_000_000_000, 600_000
    low = (100, startup + 101 * each)
    high = (600, startup + 601 * each)
    assert instructions.per_request(low, high) == each


def test_counts_too_close_are_refused(monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["bench.instructions", "--requests", "100", "104"])
    monkeypatch.setattr(instructions.shutil, "which", lambda name: "/usr/bin/valgrind")
    assert instructions.main() == 2
    assert "differ by 5 or more" in capsys.readouterr().err
